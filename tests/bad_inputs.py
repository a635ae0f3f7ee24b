"""The one table of bad user input, run against the Python API (test_reliability), the CLI and the app.

Each row: an id, the generate() keyword arguments, and a fragment of the one-sentence error.
"""

BAD_INPUTS = [
    ("empty", {"first": ""}, "empty"),
    ("whitespace", {"first": "   \t"}, "empty"),
    ("latin", {"first": "abc"}, "only Chinese"),
    ("digits", {"first": "123"}, "only Chinese"),
    ("emoji", {"first": "山😀"}, "only Chinese"),
    ("half-width-comma", {"first": "山,"}, "only Chinese"),
    ("full-width-comma", {"first": "山，"}, "only Chinese"),
    ("surrogate", {"first": "山\ud800"}, "unpaired surrogate"),
    ("control", {"first": "山\x07"}, "only Chinese"),
    ("rtl-mark", {"first": "\u200f山"}, "only Chinese"),
    ("very-long", {"first": "山" * 10_000}, "too long"),
    ("out-of-vocab", {"first": "山龘"}, "龘"),
    ("form-6", {"form": 6}, "form"),
    ("lines-0", {"lines": 0}, "lines"),
    ("lines-1", {"lines": 1}, "lines"),
    ("lines-17", {"lines": 17}, "lines"),
    ("lines-neg", {"lines": -3}, "lines"),
    ("acrostic-too-many", {"acrostic": "春夜山月花鸟白日云水风雨霜雪江河湖", "form": 5}, "head"),
    ("acrostic-vs-lines", {"acrostic": "春夜山月", "lines": 2}, "head"),
    ("temperature-0", {"temperature": 0}, "temperature"),
    ("temperature-neg", {"temperature": -1}, "temperature"),
    ("temperature-nan", {"temperature": float("nan")}, "temperature"),
    ("temperature-inf", {"temperature": float("inf")}, "temperature"),
    ("top-p-0", {"top_p": 0}, "top_p"),
    ("top-p-above-1", {"top_p": 1.5}, "top_p"),
    ("top-k-0", {"top_k": 0}, "top_k"),
    ("seed-float", {"seed": 1.5}, "seed"),
    ("seed-text", {"seed": "abc"}, "seed"),
    ("keywords-latin", {"first": "山", "keywords": "hello"}, "only Chinese"),
    ("keyword-longer-than-a-line", {"form": 5, "keywords": "白日依山尽黄"}, "a line holds only 5"),
    ("keywords-too-many", {"keywords": "白日 黄河 千里 明月 故乡"}, "one to 4 keywords"),
    ("keywords-do-not-fit", {"form": 5, "lines": 2, "keywords": "白日依 黄河入 千里目"}, "cannot all stand whole"),
    ("title-without-controls", {"first": "山", "title": "春晓"}, "cannot read a title"),
    ("first-and-acrostic", {"first": "山", "acrostic": "春夜"}, "either"),
]

CLI_FLAGS = {
    "first": "--first",
    "acrostic": "--acrostic",
    "form": "--form",
    "lines": "--lines",
    "temperature": "--temperature",
    "top_p": "--top-p",
    "top_k": "--top-k",
    "seed": "--seed",
    "keywords": "--keywords",
    "title": "--title",
}
