"""The SQL store: change control's tables, the engine, the background writer and its spool.

``models`` declares the tables (Alembic migrations in ``migrations/`` create
them); ``engine`` opens SQLite in ``data_dir`` (WAL, ``BEGIN IMMEDIATE``) or
the PostgreSQL named by ``database:``; ``chain`` appends to and verifies the
hash-chained change log; ``control`` holds overrides and suspensions;
``events`` applies what the proxy records; ``writer`` does that off the
request path, spooling to disk while the store is down.
"""
