"""``one_of`` on PostgreSQL (an array parameter) and SQLite (a list of parameters) selects
exactly the rows whose value is listed; ``int_array`` sends bigints as the array's text."""

from __future__ import annotations

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    select,
)
from sqlalchemy.orm import Session

from autods.db.inlist import int_array, one_of

pytestmark = pytest.mark.integration

EXTREMES = [-(2**63), -1, 0, 1, 2**31, 2**63 - 1]


@pytest.fixture(params=["postgresql", "sqlite"])
def session(request, tmp_path):
    url = (request.getfixturevalue("pg_url") if request.param == "postgresql"
           else f"sqlite:///{tmp_path / 'inlist.sqlite'}")
    engine = create_engine(url)
    with Session(engine) as db:
        yield db
    engine.dispose()


def test_listed_values_select_their_rows_and_nothing_else(session):
    table = Table("inlist_values", MetaData(), Column("id", Integer, primary_key=True),
                  Column("big", BigInteger), Column("name", String))
    table.create(session.get_bind())
    stored = [*EXTREMES, *range(1000, 1100)]
    session.execute(table.insert(), [{"id": i, "big": v, "name": f"n{v}"}
                                     for i, v in enumerate(stored)])
    wanted = [*EXTREMES, *range(1050, 1200, 3)]

    def found(condition) -> list:
        return session.scalars(select(table.c.big).where(condition).order_by(table.c.big)).all()

    expected = sorted(v for v in stored if v in set(wanted))
    assert found(one_of(session, table.c.big, wanted)) == expected
    assert found(one_of(session, table.c.id, [0, 5, 10_000])) == sorted([stored[0], stored[5]])
    assert found(one_of(session, table.c.name, [f"n{v}" for v in wanted])) == expected
    assert found(one_of(session, table.c.big, [])) == []


def test_an_int_array_unnests_to_its_values_across_the_bigint_range(pg_url):
    engine = create_engine(pg_url)
    values = [*EXTREMES, *range(-500, 500, 7)]
    with Session(engine) as db:
        assert db.scalars(select(func.unnest(int_array(values)))).all() == values
        assert db.scalars(select(func.unnest(int_array([])))).all() == []
    engine.dispose()
