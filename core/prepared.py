"""Single-row lookups whose SQL is compiled once per process.

Building a query (``filter`` → ``add_q`` → ``as_sql``) cost several times more
than running it on the hot read paths (a workspace or exec by public id, polled
by agents many times a second; bench/README.md). :class:`PreparedGet` compiles
its queryset once, with placeholder values, through Django's own compiler, then
only executes that SQL with each call's values and builds the row the way
``QuerySet`` does (``Model.from_db`` after the fields' database converters).

Use it only for lookups on unique columns (it refuses a second row like
``get()``) and with values of the fields' own types. ``select_related`` in
``refine`` is honoured like the queryset's (forward relations).

:class:`PreparedList` does the same for a page of rows (a list's first page and
the pages after a keyset cursor), with the page size as a parameter.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from django.db import connections, models, router, transaction

M = TypeVar("M", bound=models.Model)

_INTEGER_TYPES = (models.IntegerField, models.AutoField, models.ForeignKey)


class _Prepared(Generic[M]):
    """Compiles a queryset once per database, with placeholder values for ``fields``."""

    def __init__(self, model: type[M], fields: tuple[str, ...]) -> None:
        self.model = model
        self.fields = fields
        self._lock = threading.Lock()
        self._compiled: dict[str, _Compiled] = {}

    def _queryset(self, alias: str, placeholders: dict[str, Any]) -> models.QuerySet[M]:
        raise NotImplementedError

    def _placeholder(self, alias: str, index: int, name: str) -> Any:
        field: Any = self.model._meta.get_field(name)
        # Only a value's position in the parameters matters, but it must be one the
        # field can hold: Django drops a condition no value can fail (``seq > -1`` on a
        # positive field), and the placeholder with it. Near the top of the range, no
        # fixed condition is likely to use it.
        if isinstance(field, _INTEGER_TYPES):
            target = field.target_field if isinstance(field, models.ForeignKey) else field
            ranges = connections[alias].ops.integer_field_ranges
            _, high = ranges.get(target.get_internal_type(), (0, 2**31 - 1))
            return high - 1 - index
        if isinstance(field, models.DateTimeField):
            return datetime(1, 1, 2, tzinfo=UTC) + timedelta(microseconds=index)
        return f"\x01prepared-{index}"

    def _compile(self, alias: str) -> _Compiled:
        with self._lock:
            if alias in self._compiled:
                return self._compiled[alias]
            placeholders = {
                name: self._placeholder(alias, i, name) for i, name in enumerate(self.fields)
            }
            queryset = self._queryset(alias, placeholders)
            compiler = queryset.query.get_compiler(using=alias)
            # Django compiles a locking query only inside a transaction (where it must
            # run); one for a pipeline's implicit transaction is compiled in an empty one
            # (no round trip).
            outside = queryset.query.select_for_update and not connections[alias].in_atomic_block
            with transaction.atomic(using=alias) if outside else contextlib.nullcontext():
                sql, params = compiler.as_sql()
            # Parameters are values as the database takes them (SQLite: a datetime as text).
            by_value = {self._prep(alias, name, v): name for name, v in placeholders.items()}
            # Each parameter is a lookup value (by field name) or a fixed one.
            slots = [(True, by_value[p]) if p in by_value else (False, p) for p in params]
            assert {slot for named, slot in slots if named} == set(self.fields), sql
            compiled = _Compiled(
                sql=sql,
                locks=bool(queryset.query.select_for_update),
                slots=slots,
                plan=_plan(compiler.klass_info, compiler.select),
                converters=compiler.get_converters([column[0] for column in compiler.select]),
            )
            self._compiled[alias] = compiled
            return compiled

    def _prep(self, alias: str, name: str, value: Any) -> Any:
        field: Any = self.model._meta.get_field(name)
        return field.get_db_prep_value(value, connections[alias], prepared=False)

    def _fetch(self, values: dict[str, Any], *, extra_sql: str = "", extra: Any = ()) -> list[M]:
        alias = router.db_for_read(self.model)
        sql, params = self._statement(alias, values)
        with connections[alias].cursor() as cursor:
            cursor.execute(sql + extra_sql, [*params, *extra])
            rows = cursor.fetchall()
        return self._built(alias, rows)

    def _statement(self, alias: str, values: dict[str, Any]) -> tuple[str, list[Any]]:
        """The compiled SQL and this call's parameters."""
        compiled = self._compile(alias)
        prepped = {name: self._prep(alias, name, value) for name, value in values.items()}
        return compiled.sql, [prepped[slot] if named else slot for named, slot in compiled.slots]

    def _built(self, alias: str, rows: Any) -> list[M]:
        """Model instances of fetched rows, as ``QuerySet`` builds them."""
        compiled = self._compile(alias)
        connection = connections[alias]
        built: list[M] = []
        for fetched in rows:
            row = list(fetched)
            for position, (functions, expression) in compiled.converters.items():
                value = row[position]
                for function in functions:
                    value = function(value, expression, connection)
                row[position] = value
            built.append(_build(compiled.plan, alias, row))
        return built


class PreparedGet(_Prepared[M]):
    """``model.objects.filter(**{field: value, ...}).get()`` with the SQL built once.

    ``refine`` adds fixed conditions to the queryset (compiled with it); the
    lookup values are given to :meth:`get` by keyword, named as in ``fields``.
    """

    def __init__(
        self,
        model: type[M],
        *fields: str,
        refine: Callable[[models.QuerySet[M]], models.QuerySet[M]] | None = None,
    ) -> None:
        super().__init__(model, fields)
        self.refine = refine

    def _queryset(self, alias: str, placeholders: dict[str, Any]) -> models.QuerySet[M]:
        queryset = self.model._default_manager.using(alias).filter(**placeholders)
        return queryset if self.refine is None else self.refine(queryset)

    def get(self, **values: Any) -> M | None:
        """The one row with these values, or None; ``MultipleObjectsReturned`` for two."""
        # At most two rows: more than one is an error whatever their number. A query that
        # locks its rows (``select_for_update`` in ``refine``) cannot take a LIMIT after
        # its FOR UPDATE: it reads them all (a lookup on unique columns: one).
        locks = self._compile(router.db_for_read(self.model)).locks
        rows = self._fetch(values, extra_sql="" if locks else " LIMIT 2")
        if len(rows) > 1:
            model: Any = self.model
            raise model.MultipleObjectsReturned(f"More than one {model.__name__}.")
        return rows[0] if rows else None

    def statement(self, **values: Any) -> tuple[str, list[Any]]:
        """The SQL and parameters :meth:`get` would run, for a caller that sends them
        itself (e.g. pipelined with other statements); :meth:`built` makes its rows."""
        return self._statement(router.db_for_read(self.model), values)

    def built(self, rows: Any) -> list[M]:
        """The instances :meth:`get` would return for ``rows`` fetched by :meth:`statement`."""
        return self._built(router.db_for_read(self.model), rows)


class PreparedList(_Prepared[M]):
    """The rows of ``build(placeholders)`` (an ordered queryset), up to a limit, SQL built once.

    ``build`` receives one placeholder per name in ``fields`` and must use each in
    its conditions (any number of times); :meth:`rows` substitutes the call's
    values. The queryset must not be sliced: the limit is a parameter.
    """

    def __init__(
        self,
        model: type[M],
        *fields: str,
        build: Callable[[models.QuerySet[M], dict[str, Any]], models.QuerySet[M]],
    ) -> None:
        super().__init__(model, fields)
        self.build = build

    def _queryset(self, alias: str, placeholders: dict[str, Any]) -> models.QuerySet[M]:
        queryset = self.build(self.model._default_manager.using(alias), placeholders)
        assert not queryset.query.is_sliced, "the limit is a parameter of rows()"
        return queryset

    def rows(self, *, limit: int, **values: Any) -> list[M]:
        return self._fetch(values, extra_sql=" LIMIT %s", extra=(limit,))


@dataclass(frozen=True)
class _Plan:
    """Where one model's columns are in a row, and its select_related children."""

    model: Any
    names: list[str]
    start: int
    pk_index: int
    # (set the child on its parent, set the parent on the child, the child's plan)
    children: list[tuple[Any, Any, _Plan]]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    locks: bool
    slots: list[tuple[bool, Any]]
    plan: _Plan
    converters: dict[int, Any]


def _plan(klass_info: dict[str, Any], select: list[Any]) -> _Plan:
    """The layout QuerySet's iterator (and its RelatedPopulator) derive, computed once."""
    fields = klass_info["select_fields"]
    names = [column[0].target.attname for column in select[fields[0] : fields[-1] + 1]]
    model = klass_info["model"]
    children = [
        (info["local_setter"], info["remote_setter"], _plan(info, select))
        for info in klass_info.get("related_klass_infos", [])
    ]
    return _Plan(model, names, fields[0], names.index(model._meta.pk.attname), children)


def _build(plan: _Plan, alias: str, row: list[Any]) -> Any:
    values = row[plan.start : plan.start + len(plan.names)]
    instance = plan.model.from_db(alias, plan.names, values)
    for local_setter, remote_setter, child_plan in plan.children:
        child = None
        if row[child_plan.start + child_plan.pk_index] is not None:  # else a null relation
            child = _build(child_plan, alias, row)
            remote_setter(child, instance)
        local_setter(instance, child)
    return instance
