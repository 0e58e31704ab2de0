import types

import ranking


def test_all_is_the_public_api():
    assert sorted(ranking.__all__) == [
        "Hits",
        "convex",
        "damp",
        "dedupe",
        "is_question",
        "min_max",
        "mmr",
        "rerank_head",
        "rrf",
        "spread_to_neighbours",
        "z_score",
    ]


def test_all_lists_every_public_member_in_order():
    # Submodules (ranking.hits, ranking.normalize) are attributes too; they are not API.
    public = [
        name
        for name, value in vars(ranking).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    ]
    assert ranking.__all__ == sorted(public, key=str.casefold)
