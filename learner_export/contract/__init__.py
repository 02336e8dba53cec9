"""The export contract (docs/contract.md): the functions in the schema learner_export that are
the service's only link to the platform's tables, and what the service learns from them.

The page function's result columns are read from the catalogue when the service starts: the
exported columns, their order and their types come from the adapter's SQL, not from Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from learner_export.contract.columns import KEY_COLUMNS, PG_KINDS, Column, Kind
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

# Every function of the contract, its arguments, result columns and attributes: one query.
_CATALOGUE = """
SELECT p.proname AS name,
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
class Contract:
    """What the service learned from the database: the exported columns, in order."""

    columns: tuple[Column, ...]

    @property
    def by_name(self) -> dict[str, Column]:
        return {c.name: c for c in self.columns}


def _problems_of(functions: dict[str, list[FunctionInfo]]) -> tuple[list[str], list[Column]]:
    """Sentences saying how the functions miss the contract, and the page function's columns."""
    problems: list[str] = []
    columns: list[Column] = []
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
        if info.inputs != want.parameters:
            got = ", ".join(f"{n} {t}" for n, t in info.inputs)
            problems.append(f"{SCHEMA}.{want.name} takes ({got}); the contract says {want.text()}")
            continue
        if want.returns == "table":
            if not info.returns_set or not info.outputs:
                problems.append(f"{SCHEMA}.{want.name} must RETURN TABLE (...)")
                continue
            out = {n: (t, b) for n, t, b in info.outputs}
            for key, key_type in KEY_COLUMNS:
                if key not in out:
                    problems.append(
                        f"{SCHEMA}.{want.name}'s result lacks the keyset column {key} ({key_type})"
                    )
                elif out[key][1] != key_type:
                    problems.append(
                        f"{SCHEMA}.{want.name}'s keyset column {key} is "
                        f"{out[key][0]}; the contract says {key_type}"
                    )
        elif info.return_type != want.returns:
            problems.append(
                f"{SCHEMA}.{want.name} returns {info.return_type}; the contract says {want.returns}"
            )
        if want.name == "get_learner_export_batch":
            for name, written, base in info.outputs:
                kind = Kind.TEXT if base.endswith(":enum") else PG_KINDS.get(base)
                if kind is None:
                    problems.append(
                        f"column {name} of {SCHEMA}.{want.name} has type {written}, which the "
                        f"formats do not support; cast it in the adapter (e.g. {name}::text). "
                        f"Supported: {', '.join(sorted(set(PG_KINDS)))}, enums and domains "
                        "over them"
                    )
                elif not name or name.startswith("_"):
                    problems.append(
                        f"column {name!r} of {SCHEMA}.{want.name}: names must not "
                        "be empty or start with _ (reserved for _cursor)"
                    )
                else:
                    columns.append(Column(name, kind, written))
    return problems, columns


async def read_functions(conn: asyncpg.Connection) -> dict[str, list[FunctionInfo]]:
    functions: dict[str, list[FunctionInfo]] = {}
    for row in await conn.fetch(_CATALOGUE, SCHEMA):
        functions.setdefault(row["name"], []).append(FunctionInfo.of(row))
    return functions


async def load_contract(conn: asyncpg.Connection) -> Contract:
    """The contract as this database offers it, or ContractNotMet listing what is missing."""
    problems, columns = _problems_of(await read_functions(conn))
    if problems:
        raise ContractNotMet(problems)
    return Contract(tuple(columns))


async def learn(conn: asyncpg.Connection) -> tuple[Contract, frozenset[str]]:
    """The contract, and the time zones this PostgreSQL knows (what `tz` may name)."""
    contract = await load_contract(conn)
    zones = frozenset(
        r[0] for r in await conn.fetch("SELECT name FROM pg_catalog.pg_timezone_names")
    )
    return contract, zones | {"UTC"}
