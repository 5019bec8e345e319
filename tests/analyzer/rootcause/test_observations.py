"""Rows of the tomography matrix: split losses give a forward and a return row, pseudo-components
join the return row, a round trip crosses its host and end nodes twice, and a link direction
knows its opposite."""

from __future__ import annotations

from analyzer.rootcause.observations import BOTH, FORWARD, REVERSE, loss_observations
from tests.analyzer.rootcause.tomography_support import path


def test_split_loss_gives_two_rows_and_pseudo_components_join_the_return_row() -> None:
    stamp = path(
        ["host:a", "a", "a>b", "b", "service:b"], ["b", "b>a", "a"], sent=100, lost=7, forward_lost=3, reverse_lost=4
    )
    echo = path(["host:a", "a", "a>b", "b"], ["b", "b>a", "a"], sent=100, lost=5)
    obs = loss_observations((stamp, echo), 1e-4)
    assert obs.direction.tolist() == [FORWARD, REVERSE, BOTH]
    assert obs.sent.tolist() == [100, 97, 100] and obs.lost.tolist() == [3, 4, 5]
    returning = {obs.names[c] for c in obs.columns_of(1)}
    assert returning == {"b", "b>a", "a", "host:a", "service:b"}
    # a round trip crosses the agent's host and both end nodes twice
    echo_row = obs.crossings.getrow(2)
    crossed = {obs.names[c]: v for c, v in zip(echo_row.indices, echo_row.data)}
    assert crossed["host:a"] == 2 and crossed["a"] == 2 and crossed["a>b"] == 1


def test_each_link_direction_knows_its_opposite_and_nothing_else_has_one() -> None:
    there_and_back = path(["host:qa", "qa", "qa>qb", "qb", "service:qb"], ["qb", "qb>qa", "qa"], sent=10, lost=0)
    one_way = path(["host:qa", "qa", "qa>qc", "qc"], ["qc", "qc>qd", "qd", "qd>qa", "qa"], sent=10, lost=0)
    obs = loss_observations((there_and_back, one_way), 1e-4)
    opposite = obs.opposite_columns()
    named = {obs.names[c]: obs.names[o] for c, o in enumerate(opposite.tolist()) if o >= 0}
    assert named["qa>qb"] == "qb>qa" and named["qb>qa"] == "qa>qb"
    assert not {"qa>qc", "qc>qd", "qd>qa", "host:qa", "service:qb", "qa", "qb"} & set(named)
