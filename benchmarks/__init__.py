"""The benchmark suite: the service against PostgreSQL's COPY, a naive endpoint and openpyxl.

Run it with `python -m benchmarks --help`.
"""
