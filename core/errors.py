"""The one exception type for bad user input: its message says what is wrong and how to fix it."""


class ClassLensError(ValueError):
    """Bad input from the user: a checkpoint, dataset or option ClassLens cannot use.

    The CLI prints it as one ``error: ...`` line and the dashboard as ``st.error``; the message
    must name what was found and what to do instead.
    """
