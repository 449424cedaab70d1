"""Print a Streamlit config.toml as command-line flags, one per line (``--section.key=value``).

deploy/entrypoint.sh uses it so the production config applies outside Docker too, where the
repository's own .streamlit/config.toml (the developer one) would otherwise be read: flags
take precedence over every config file.
"""

from __future__ import annotations

import sys
import tomllib


def flags(config: dict) -> list[str]:
    """Return ``--section.key=value`` for every option of a parsed config.toml."""
    out = []
    for section, options in config.items():
        for key, value in options.items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                text = str(v).lower() if isinstance(v, bool) else str(v)
                out.append(f"--{section}.{key}={text}")
    return out


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        print("\n".join(flags(tomllib.load(f))))
