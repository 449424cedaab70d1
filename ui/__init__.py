"""Streamlit helpers shared by several pages (run picker, background jobs, image grid).

The engine lives in core/ and never imports streamlit; everything Streamlit-specific that
more than one page needs lives here.
"""
