"""Runnable examples that ship with the package (``pip install 'entra-guard[demo]'``).

    orders_api   a FastAPI orders service protected by Entra ID; ``entra-guard demo`` serves it

They are examples to read and run, not library code: nothing in ``entra_guard`` imports them
except the ``demo`` command.
"""
