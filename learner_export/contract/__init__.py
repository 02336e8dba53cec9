"""The export contract (docs/contract.md): the functions in the schema learner_export that are
the service's only link to the platform's tables, and what the service learns from them.

The page function's result columns are read from the catalogue: the exported columns, their
order and their types come from the adapter's SQL, not from Python. So do the operator's words:
the keyset's time column is whatever learner_export_page_ends names its first column, and the
optional learner_export.scope_unit() names what a scope unit is (organisation, cohort, client).
The contract's version is the oids of its functions (and of the optional bulk view), which `db
migrate` re-creates whenever the adapter changes: a running service compares it to tell that it
must learn the contract again.

The optional view learner_export.learner_export_rows holds every row of an export at once (its
filters read from the export's settings), for the bulk pass (learner_export.pages): it must have
the page function's columns, be read as its owner (not security_invoker), and apply the
caller's scope through export_scope().
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from learner_export.contract.columns import KEY_ID, PG_KINDS, Column, Kind
from learner_export.errors import ContractNotMet

SCHEMA = "learner_export"
SERVICE_ROLE = "learner_export_service"

_TSTZ = "timestamp with time zone"
_FILTERS = (
    ("p_caller", "uuid"),
    ("p_client_ids", "uuid[]"),
    ("p_created_from", _TSTZ),
    ("p_created_to", _TSTZ),
    ("p_active", "boolean"),
)
_AFTER = (("p_after_created_at", _TSTZ), ("p_after_id", "uuid"))


@dataclass(frozen=True, slots=True)
class Signature:
    name: str
    parameters: tuple[tuple[str, str], ...]
    returns: str  # "table" for a set of rows, else the type

    def text(self) -> str:
        args = ", ".join(f"{n} {t}" for n, t in self.parameters)
        return f"{SCHEMA}.{self.name}({args})"


FUNCTIONS: tuple[Signature, ...] = (
    Signature("caller_role", (("p_caller", "uuid"),), "text"),
    Signature("export_scope", (("p_caller", "uuid"), ("p_client_ids", "uuid[]")), "uuid[]"),
    Signature(
        "get_learner_export_batch", (*_FILTERS, *_AFTER, ("p_page_size", "integer")), "table"
    ),
    Signature("count_learner_export", (*_FILTERS, *_AFTER), "bigint"),
    Signature(
        "learner_export_page_ends",
        (*_FILTERS, *_AFTER, ("p_page_size", "integer"), ("p_pages", "integer")),
        "table",
    ),
)
BY_FUNCTION = {f.name: f for f in FUNCTIONS}
# Optional: (singular, plural) of what a scope unit is called; "client" when absent.
SCOPE_UNIT = Signature("scope_unit", (), "table")
NAMES = (*BY_FUNCTION, SCOPE_UNIT.name)
# Optional: every row of an export at once, for the bulk pass.
ROWS_VIEW = "learner_export_rows"

# The bulk view's columns (types without their modifiers, as a function's result columns are
# written), whether it runs as its reader (security_invoker) and whether it calls
# export_scope() (its rewrite rule depends on the function): one query.
_ROWS_VIEW_CATALOGUE = """
SELECT c.oid::bigint AS oid,
       EXISTS (SELECT FROM unnest(c.reloptions) AS o
                WHERE lower(o) IN ('security_invoker=true', 'security_invoker=on',
                                   'security_invoker=yes', 'security_invoker=1')) AS invoker,
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute AS a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum) AS names,
       ARRAY(SELECT pg_catalog.format_type(a.atttypid, NULL)
               FROM pg_catalog.pg_attribute AS a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum) AS types,
       EXISTS (SELECT FROM pg_catalog.pg_rewrite AS r
                 JOIN pg_catalog.pg_depend AS d
                   ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
                 JOIN pg_catalog.pg_proc AS p
                   ON d.refclassid = 'pg_catalog.pg_proc'::regclass AND d.refobjid = p.oid
                WHERE r.ev_class = c.oid AND p.pronamespace = c.relnamespace
                  AND p.proname = 'export_scope') AS scoped
  FROM pg_catalog.pg_class AS c
  JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('v', 'm', 'r', 'f', 'p')
"""

# Every function of the contract, its arguments, result columns and attributes: one query.
_CATALOGUE = """
SELECT p.proname AS name,
       p.oid::bigint AS oid,
       p.prosecdef AS security_definer,
       coalesce(p.proconfig, '{}') AS config,
       p.proretset AS returns_set,
       pg_catalog.format_type(p.prorettype, NULL) AS return_type,
       coalesce(p.proargnames, '{}') AS arg_names,
       coalesce(p.proargmodes::text[], '{}') AS arg_modes,
       ARRAY(SELECT pg_catalog.format_type(t, NULL)
               FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) AS t
       ) AS arg_type_names,
       ARRAY(SELECT coalesce(b.typname, t.typname) || CASE WHEN t.typtype = 'e' THEN ':enum'
                                                          ELSE '' END
               FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]))
                        WITH ORDINALITY AS a(oid, i)
               JOIN pg_catalog.pg_type AS t ON t.oid = a.oid
               LEFT JOIN pg_catalog.pg_type AS b ON t.typtype = 'd' AND b.oid = t.typbasetype
              ORDER BY a.i) AS arg_base_types,
       ARRAY(SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
               FROM pg_catalog.aclexplode(coalesce(p.proacl,
                        pg_catalog.acldefault('f', p.proowner))) AS a
              WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner) AS executors,
       p.proowner::regrole::text AS owner
  FROM pg_catalog.pg_proc AS p
  JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
 WHERE n.nspname = $1
 ORDER BY p.proname, p.oid
"""


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    name: str
    oid: int
    security_definer: bool
    config: tuple[str, ...]
    returns_set: bool
    return_type: str
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[tuple[str, str, str], ...]  # name, type as written, base type name
    executors: tuple[str, ...]
    owner: str

    @classmethod
    def of(cls, row: Any) -> FunctionInfo:
        names, modes = list(row["arg_names"]), list(row["arg_modes"])
        types, bases = list(row["arg_type_names"]), list(row["arg_base_types"])
        modes = modes or ["i"] * len(types)
        names = names + [""] * (len(types) - len(names))
        inputs = tuple(
            (n, t) for n, t, m in zip(names, types, modes, strict=True) if m in ("i", "b", "v")
        )
        outputs = tuple(
            (n, t, b)
            for n, t, b, m in zip(names, types, bases, modes, strict=True)
            if m in ("o", "t", "b")
        )
        return cls(
            row["name"],
            row["oid"],
            row["security_definer"],
            tuple(row["config"]),
            row["returns_set"],
            row["return_type"],
            inputs,
            outputs,
            tuple(row["executors"]),
            row["owner"],
        )


@dataclass(frozen=True, slots=True)
class RowsView:
    """The adapter's bulk view as the catalogue describes it."""

    oid: int
    invoker: bool
    columns: tuple[tuple[str, str], ...]  # name, type as written
    scoped: bool

    @classmethod
    def of(cls, row: Any) -> RowsView:
        return cls(
            row["oid"],
            row["invoker"],
            tuple(zip(row["names"], row["types"], strict=True)),
            row["scoped"],
        )


@dataclass(frozen=True, slots=True)
class Words:
    """The operator's words: the keyset's time column, and what a scope unit is called."""

    time_column: str = "created_at"
    unit: str = "client"
    units: str = "clients"


@dataclass(frozen=True, slots=True)
class Contract:
    """What the service learned from the database: the exported columns, in order, the
    operator's words, and the version (the functions' oids) they were learned at."""

    columns: tuple[Column, ...]
    words: Words = Words()
    version: str = ""
    # Whether the adapter offers the bulk view (learner_export.learner_export_rows).
    bulk: bool = False

    @property
    def by_name(self) -> dict[str, Column]:
        return {c.name: c for c in self.columns}


def version_of(functions: dict[str, list[FunctionInfo]], view: RowsView | None = None) -> str:
    """The contract's version: its functions' oids and the bulk view's, new whenever `db
    migrate` re-creates them."""
    oids = ",".join(str(f.oid) for n in NAMES for f in sorted(functions.get(n, []), key=_oid))
    return oids + (f";{view.oid}" if view is not None else "")


def _oid(info: FunctionInfo) -> int:
    return info.oid


def _problems_of(
    functions: dict[str, list[FunctionInfo]], view: RowsView | None = None
) -> tuple[list[str], list[Column], Words]:
    """Sentences saying how the functions (and the bulk view, when there is one) miss the
    contract, the page function's columns and the operator's words."""
    problems: list[str] = []
    columns: list[Column] = []
    time_column = _time_column(functions, problems)
    for want in FUNCTIONS:
        found = functions.get(want.name, [])
        if not found:
            problems.append(
                f"{SCHEMA}.{want.name} is missing: define {want.text()} in the "
                "adapter (docs/contract.md)"
            )
            continue
        if len(found) > 1:
            problems.append(
                f"{SCHEMA}.{want.name} is defined {len(found)} times; drop all but {want.text()}"
            )
            continue
        info = found[0]
        where = f"{SCHEMA}.{want.name}"
        if not info.security_definer:
            problems.append(
                f"{where} is not SECURITY DEFINER: the service's role holds no right on your "
                "tables, so the function must read them as its owner"
            )
        if not any(c in ("search_path=", 'search_path=""') for c in info.config):
            problems.append(
                f"{where} lacks SET search_path = '' (a SECURITY DEFINER function must not "
                "trust the caller's search_path)"
            )
        if info.inputs != want.parameters:
            got = ", ".join(f"{n} {t}" for n, t in info.inputs)
            problems.append(f"{where} takes ({got}); the contract says {want.text()}")
            continue
        if want.returns == "table":
            if not info.returns_set or not info.outputs:
                problems.append(f"{where} must RETURN TABLE (...)")
                continue
            out = {n: (t, b) for n, t, b in info.outputs}
            keys = ((time_column, "timestamptz"), KEY_ID) if time_column else (KEY_ID,)
            for key, key_type in keys:
                if key not in out:
                    problems.append(f"{where}'s result lacks the keyset column {key} ({key_type})")
                elif out[key][1] != key_type:
                    problems.append(
                        f"{where}'s keyset column {key} is {out[key][0]}; the contract says "
                        f"{key_type}"
                    )
        elif info.return_type != want.returns:
            problems.append(f"{where} returns {info.return_type}; the contract says {want.returns}")
        if want.name == "get_learner_export_batch":
            for name, written, base in info.outputs:
                kind = Kind.TEXT if base.endswith(":enum") else PG_KINDS.get(base)
                if kind is None:
                    problems.append(
                        f"column {name} of {where} has type {written}, which the "
                        f"formats do not support; cast it in the adapter (e.g. {name}::text). "
                        f"Supported: {', '.join(sorted(set(PG_KINDS)))}, enums and domains "
                        "over them"
                    )
                elif not name or name.startswith("_"):
                    problems.append(
                        f"column {name!r} of {where}: names must not "
                        "be empty or start with _ (reserved for _cursor)"
                    )
                else:
                    columns.append(Column(name, kind, written))
            if view is not None:
                problems.extend(_view_problems(view, info))
    return problems, columns, Words(time_column or "created_at")


def _view_problems(view: RowsView, page: FunctionInfo) -> list[str]:
    """How the bulk view misses the contract: the page function's columns (names, types,
    order), read as its owner, the caller's scope applied."""
    where = f"{SCHEMA}.{ROWS_VIEW}"
    problems = []
    want = tuple((n, t) for n, t, _ in page.outputs)
    if view.columns != want:
        got = ", ".join(f"{n} {t}" for n, t in view.columns)
        problems.append(
            f"{where} must have the columns of get_learner_export_batch, in its order and "
            f"types ({', '.join(f'{n} {t}' for n, t in want)}); it has ({got})"
        )
    if view.invoker:
        problems.append(
            f"{where} is security_invoker: the service's role holds no right on your tables, so "
            "the view must read them as its owner (drop WITH (security_invoker))"
        )
    if not view.scoped:
        problems.append(
            f"{where} does not call {SCHEMA}.export_scope(): it must apply the caller's scope "
            "as the page function does (docs/contract.md)"
        )
    return problems


def _time_column(functions: dict[str, list[FunctionInfo]], problems: list[str]) -> str | None:
    """The keyset's time column: learner_export_page_ends names it, as its first column."""
    ends = functions.get("learner_export_page_ends", [])
    if len(ends) != 1 or len(ends[0].outputs) != 2:
        return None  # its own problem is reported with the function
    (name, written, base), (id_name, _, _) = ends[0].outputs
    if base != "timestamptz" or id_name != KEY_ID[0] or not name or name.startswith("_"):
        problems.append(
            f"{SCHEMA}.learner_export_page_ends must RETURN TABLE (<your keyset time column> "
            f"timestamptz, learner_id uuid); it returns ({name} {written}, {id_name} ...)"
        )
        return None
    return name


async def read_functions(conn: asyncpg.Connection) -> dict[str, list[FunctionInfo]]:
    functions: dict[str, list[FunctionInfo]] = {}
    for row in await conn.fetch(_CATALOGUE, SCHEMA):
        functions.setdefault(row["name"], []).append(FunctionInfo.of(row))
    return functions


async def read_rows_view(conn: asyncpg.Connection) -> RowsView | None:
    """The adapter's bulk view, or None when it offers none."""
    row = await conn.fetchrow(_ROWS_VIEW_CATALOGUE, SCHEMA, ROWS_VIEW)
    return None if row is None else RowsView.of(row)


async def load_contract(conn: asyncpg.Connection) -> Contract:
    """The contract as this database offers it, or ContractNotMet listing what is missing."""
    functions = await read_functions(conn)
    view = await read_rows_view(conn)
    problems, columns, words = _problems_of(functions, view)
    if problems:
        raise ContractNotMet(problems)
    if functions.get(SCOPE_UNIT.name):
        row = await conn.fetchrow(f"SELECT * FROM {SCHEMA}.{SCOPE_UNIT.name}()")
        if row is None or len(row) != 2 or not all(isinstance(v, str) and v for v in row):
            raise ContractNotMet(
                [f"{SCHEMA}.{SCOPE_UNIT.name}() must return one row (singular text, plural text)"]
            )
        words = Words(words.time_column, row[0], row[1])
    return Contract(tuple(columns), words, version_of(functions, view), view is not None)


async def current_version(conn: asyncpg.Connection) -> str:
    """The version of the contract the database offers now (a read of pg_proc, no table)."""
    version: str = await conn.fetchval(VERSION_SQL, SCHEMA, list(NAMES))
    return version


# The contract's version ($1: the schema, $2: NAMES), in the order version_of() gives it.
VERSION_SQL = f"""
SELECT coalesce((SELECT string_agg(p.oid::text, ','
                                   ORDER BY array_position($2::text[], p.proname::text), p.oid)
                   FROM pg_catalog.pg_proc AS p
                   JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
                  WHERE n.nspname = $1 AND p.proname = ANY ($2::text[])), '')
       || coalesce((SELECT ';' || c.oid::text
                      FROM pg_catalog.pg_class AS c
                      JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
                     WHERE n.nspname = $1 AND c.relname = '{ROWS_VIEW}'), '')
"""


async def learn(conn: asyncpg.Connection) -> tuple[Contract, frozenset[str]]:
    """The contract, and the time zones this PostgreSQL knows (what `tz` may name)."""
    contract = await load_contract(conn)
    zones = frozenset(
        r[0] for r in await conn.fetch("SELECT name FROM pg_catalog.pg_timezone_names")
    )
    return contract, zones | {"UTC"}
