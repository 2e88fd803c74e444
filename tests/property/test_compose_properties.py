"""The merge of a spec on top of its bases (conduit.spec.compose): what wins, what it points at."""

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conduit.spec.compose import ComposeError, Composer, Marked, flatten, marked, merge
from conduit.spec.load import parse_flat

KEYS = st.sampled_from(["a", "b", "c", "d", "spec", "x"])
SCALARS = st.one_of(st.integers(-5, 5), st.sampled_from(["s", "t", True]))
VALUES = st.recursive(
    st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.none()),
    lambda inner: st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
DOCS = st.dictionaries(KEYS, VALUES, max_size=5)


class Memory:
    """Files held in a dict: a Source for the Composer."""

    def __init__(self, files: dict[str, str]):
        self.files = files

    def name(self, rel: str) -> str:
        return rel

    def read(self, rel: str) -> str:
        if rel not in self.files:
            raise ComposeError((rel, 1, 1), "", "no such file")
        return self.files[rel]


def text(doc: dict, extends: list[str] | None = None) -> str:
    """YAML with `extends` last, so that the other keys keep their lines whether it is there or not."""
    return yaml.safe_dump({**doc, **({"extends": extends} if extends else {})}, sort_keys=False)


def resolve(files: dict[str, str], top: str):
    layer = Composer(Memory(files), parse_flat).resolve(top)
    return layer.data, flatten(layer.marks)


def leaves(doc: object, path: tuple = ()):
    """(path, value) of every value in `doc` that is not a mapping, the mappings' paths included as they are walked."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from leaves(value, path + (key,))
    else:
        yield path, doc


def at(doc: object, path: tuple) -> object:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return KeyError
        doc = doc[key]
    return doc


def tagged(doc: dict, name: str) -> Marked:
    """Marks that say only which file a value came from."""
    return marked(doc, {}, name)


@given(st.lists(DOCS, min_size=1, max_size=4), DOCS)
@settings(max_examples=200, deadline=None)
def test_a_chain_of_bases_resolves_as_the_flat_list_of_them(bases, top):
    names = [f"b{i}.yaml" for i in range(len(bases))]
    chained = {name: text(doc, [names[i - 1]] if i else None) for i, (name, doc) in enumerate(zip(names, bases))}
    chained["h.yaml"] = text(top, [names[-1]])
    flat = {name: text(doc) for name, doc in zip(names, bases)}
    flat["h.yaml"] = text(top, names)
    assert resolve(chained, "h.yaml") == resolve(flat, "h.yaml")


@given(DOCS, DOCS, DOCS)
@settings(max_examples=200, deadline=None)
def test_bases_group_either_way(a, b, c):
    """(a then b) then c is a then (b then c), when b and c are resolved as one base of the top."""
    one = {"a.yaml": text(a), "b.yaml": text(b), "c.yaml": text(c), "h.yaml": text({}, ["a.yaml", "b.yaml", "c.yaml"])}
    two = {"a.yaml": text(a), "b.yaml": text(b), "c.yaml": text(c, ["b.yaml"]), "h.yaml": text({}, ["a.yaml", "c.yaml"])}
    three = {"a.yaml": text(a), "b.yaml": text(b, ["a.yaml"]), "c.yaml": text(c), "h.yaml": text({}, ["b.yaml", "c.yaml"])}
    data, marks = resolve(one, "h.yaml")
    assert resolve(two, "h.yaml")[0] == data == resolve(three, "h.yaml")[0]
    assert {p: w[0] for p, w in resolve(two, "h.yaml")[1].items() if p} == {p: w[0] for p, w in marks.items() if p}


@given(DOCS, DOCS)
@settings(max_examples=300, deadline=None)
def test_the_child_wins_lists_and_scalars_replace_null_removes(base, child):
    data, marks = merge(base, tagged(base, "base"), child, tagged(child, "child"))
    where = flatten(marks)
    for path, value in leaves(child):
        if value is None:
            assert at(data, path) is KeyError
        else:
            assert at(data, path) == value  # a list is the child's whole list, never a blend
            assert where[path][0] == "child"
            if isinstance(value, list):
                assert all(where[path + (i,)][0] == "child" for i in range(len(value)))
                assert (path + (len(value),)) not in where  # no item of a longer base list survives


@given(DOCS, DOCS)
@settings(max_examples=300, deadline=None)
def test_what_the_child_leaves_alone_points_into_the_base(base, child):
    data, marks = merge(base, tagged(base, "base"), child, tagged(child, "child"))
    where = flatten(marks)
    assert set(where) >= {path for path, _ in leaves(data)}
    for path, value in leaves(data):
        untouched = all(at(child, path[:i]) is KeyError or isinstance(at(child, path[:i]), dict) for i in range(1, len(path) + 1)) and at(child, path) is KeyError
        if untouched:
            assert where[path][0] == "base" and at(base, path) == value


@given(DOCS)
@settings(max_examples=100, deadline=None)
def test_marks_name_the_line_of_the_file_that_wrote_the_value(doc):
    files = {"base.yaml": text(doc), "h.yaml": text({"top": 1}, ["base.yaml"])}
    data, where = resolve(files, "h.yaml")
    lines = files["base.yaml"].splitlines()
    for key in doc:
        if doc[key] is not None:
            name, line, col = where[(key,)]
            assert name == "base.yaml" and lines[line - 1][col - 1 :].startswith(f"{key}:")
    assert where[("top",)][0] == "h.yaml"


@given(DOCS, DOCS, DOCS, DOCS)
@settings(max_examples=300, deadline=None)
def test_composing_two_files_first_is_applying_them_one_after_the_other(x, p, q, r):
    """merge(merge(x, p), q) == merge(x, then(p, q)), and `then` itself groups either way."""
    from conduit.spec.compose import then

    m = {name: tagged(doc, name) for name, doc in (("x", x), ("p", p), ("q", q), ("r", r))}
    step = merge(*merge(x, m["x"], p, m["p"]), q, m["q"])
    at_once = merge(x, m["x"], *then(p, m["p"], q, m["q"]))
    assert step[0] == at_once[0] and flatten(step[1]) == flatten(at_once[1])
    left = then(*then(p, m["p"], q, m["q"]), r, m["r"])
    right = then(p, m["p"], *then(q, m["q"], r, m["r"]))
    assert merge(x, m["x"], *left)[0] == merge(x, m["x"], *right)[0]
