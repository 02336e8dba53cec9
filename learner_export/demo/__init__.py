"""The demo: a throwaway embedded PostgreSQL, the sample platform schema and its seed."""
