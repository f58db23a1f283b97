"""Agreement with human labels: the arithmetic (``agreement``) and measuring a stored
version against an eval set's current labels (``measure``).
"""
