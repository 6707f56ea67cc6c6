"""A mapping's ``where:`` row filter: a small SQL-like boolean expression, parsed once.

The grammar (keywords in any case)::

    expression := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | test
    test       := value [ ("=" | "<>" | "!=" | "<" | "<=" | ">" | ">=") value
                        | ["not"] "in" "(" value ("," value)* ")"
                        | ["not"] "like" value
                        | "is" ["not"] "null" ]
    value      := column | 'text' | number | true | false | null | "(" expression ")"

Evaluation follows SQL's three-valued logic: a comparison with NULL is neither true nor
false (unknown), ``not`` unknown is unknown, ``false and unknown`` is false, ``true or
unknown`` is true — and a row passes only when the whole filter is true. Values of different
kinds (text against a number) are an error, not a silent false: the event is dead-lettered
with the column named. Parsing makes a tree of closures once per mapping (never ``eval``), so
testing a row costs a few calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from syncd.errors import MappingApplyError

Row = Mapping[str, Any]
Truth = bool | None  # None: SQL's unknown
Value = Callable[[Row], Any]
Test = Callable[[Row], Truth]

KEYWORDS = frozenset({"and", "or", "not", "in", "like", "is", "null", "true", "false"})
_COMPARISONS = ("<=", ">=", "<>", "!=", "=", "<", ">")
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<text>'(?:[^']|'')*')
      | (?P<unterminated>'.*)
      | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")
      | (?P<op><=|>=|<>|!=|=|<|>|\(|\)|,)
      | (?P<bad>\S)
    )""",
    re.VERBOSE | re.DOTALL,
)


class WhereSyntaxError(ValueError):
    """A ``where`` that does not parse; ``column`` is the 1-based position in the text."""

    def __init__(self, message: str, column: int):
        super().__init__(message)
        self.column = column


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # text, number, name, keyword, op, end
    value: Any
    column: int  # 1-based position in the expression


@dataclass(frozen=True, slots=True)
class _Operand:
    """A value in the filter: how to read it from a row, and the column it is (if one)."""

    get: Value
    column: str | None = None

    def describe(self, value: Any) -> str:
        return f"column {self.column} ({_kind(value)})" if self.column else _kind(value)


@dataclass(frozen=True)
class Where:
    """A parsed filter: ``matches(row)`` says whether a row passes; ``columns`` it reads."""

    text: str
    columns: frozenset[str]
    _test: Test

    def matches(self, row: Row) -> bool:
        """True only when the filter is true for ``row`` (false and unknown keep it out).

        Raises MappingApplyError when the row lacks a column the filter names, or a
        comparison meets values of different kinds (text against a number, say).
        """
        missing = self.columns.difference(row)
        if missing:
            raise MappingApplyError(
                f"the row has no column {', '.join(sorted(missing))}, which 'where' reads"
            )
        return self._test(row) is True


def parse_where(text: str) -> Where:
    """Parse a filter; raises WhereSyntaxError naming the position and what to write."""
    parser = _Parser(text)
    test = parser.expression()
    parser.expect_end()
    return Where(text, frozenset(parser.columns), test)


def _tokens(text: str) -> list[_Token]:
    found: list[_Token] = []
    position = 0
    while True:
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:  # only blanks are left
            found.append(_Token("end", None, len(text) + 1))
            return found
        kind = match.lastgroup
        assert kind is not None
        raw = match.group(kind)
        column = match.start(kind) + 1
        position = match.end()
        if kind == "unterminated":
            raise WhereSyntaxError("text is not closed; end it with '", column)
        if kind == "bad":
            raise WhereSyntaxError(f"unexpected {raw!r}", column)
        if kind == "text":
            found.append(_Token("text", raw[1:-1].replace("''", "'"), column))
        elif kind == "number":
            found.append(_Token("number", _number(raw), column))
        elif kind == "name" and raw.startswith('"'):
            found.append(_Token("name", raw[1:-1].replace('""', '"'), column))
        elif kind == "name" and raw.lower() in KEYWORDS:
            found.append(_Token("keyword", raw.lower(), column))
        else:
            found.append(_Token(kind, raw, column))


def _number(raw: str) -> int | Decimal:
    try:
        return int(raw)
    except ValueError:
        return Decimal(raw)  # exact, like the values events carry


class _Parser:
    """Recursive descent over the tokens; each rule returns a closure over the row."""

    def __init__(self, text: str):
        self._tokens = _tokens(text)
        self._at = 0
        self.columns: set[str] = set()

    def _peek(self) -> _Token:
        return self._tokens[self._at]

    def _take(self) -> _Token:
        token = self._tokens[self._at]
        self._at += 1
        return token

    def _accept(self, kind: str, value: str) -> bool:
        token = self._peek()
        if token.kind == kind and token.value == value:
            self._at += 1
            return True
        return False

    def _fail(self, expected: str) -> WhereSyntaxError:
        token = self._peek()
        found = "the end" if token.kind == "end" else repr(_spelled(token))
        return WhereSyntaxError(f"expected {expected}, found {found}", token.column)

    def expect_end(self) -> None:
        if self._peek().kind != "end":
            raise self._fail("'and', 'or' or the end of the filter")

    def expression(self) -> Test:
        left = self._and()
        while self._accept("keyword", "or"):
            left = _or(left, self._and())
        return left

    def _and(self) -> Test:
        left = self._not()
        while self._accept("keyword", "and"):
            left = _and(left, self._not())
        return left

    def _not(self) -> Test:
        if self._accept("keyword", "not"):
            return _not(self._not())
        return self._test()

    def _test(self) -> Test:
        left = self._operand()
        token = self._peek()
        if token.kind == "op" and token.value in _COMPARISONS:
            self._take()
            return _compare(token.value, left, self._operand())
        negated = False
        if token.kind == "keyword" and token.value == "not":
            after = self._tokens[self._at + 1]
            if after.kind == "keyword" and after.value in ("in", "like"):
                self._take()
                negated, token = True, after
        if self._accept("keyword", "in"):
            test = _in(left, self._list())
        elif self._accept("keyword", "like"):
            test = _like(left, self._pattern())
        elif self._accept("keyword", "is"):
            negated = self._accept("keyword", "not")
            if not self._accept("keyword", "null"):
                raise self._fail("null after 'is' (or 'is not')")
            test = _is_null(left)
        else:
            return _boolean(left)  # a boolean column, true, or a parenthesised filter
        return _not(test) if negated else test

    def _list(self) -> list[_Operand]:
        if not self._accept("op", "("):
            raise self._fail("'(' and a list of values after 'in'")
        items = [self._operand()]
        while self._accept("op", ","):
            items.append(self._operand())
        if not self._accept("op", ")"):
            raise self._fail("',' or ')' in the list after 'in'")
        return items

    def _pattern(self) -> re.Pattern[str]:
        token = self._take()
        if token.kind != "text":
            self._at -= 1
            raise self._fail("a 'text' pattern after 'like' (% any text, _ one character)")
        return _like_pattern(token.value)

    def _operand(self) -> _Operand:
        token = self._take()
        if token.kind == "name":
            name: str = token.value
            self.columns.add(name)
            return _Operand(lambda row: row[name], name)
        if token.kind in ("text", "number"):
            constant = token.value
            return _Operand(lambda row: constant)
        if token.kind == "keyword" and token.value in ("true", "false", "null"):
            literal = {"true": True, "false": False, "null": None}[token.value]
            return _Operand(lambda row: literal)
        if token.kind == "op" and token.value == "(":
            inner = self.expression()
            if not self._accept("op", ")"):
                raise self._fail("')' to close the '('")
            return _Operand(inner)
        self._at -= 1
        raise self._fail("a column, a 'text', a number, true, false, null or '('")


def _spelled(token: _Token) -> str:
    if token.kind == "text":
        return "'" + str(token.value) + "'"
    return str(token.value)


# -- evaluation: SQL's three-valued logic -----------------------------------------------------


def _boolean(operand: _Operand) -> Test:
    """A value standing alone as a condition: true, false or null (a boolean column)."""

    def test(row: Row) -> Truth:
        result = operand.get(row)
        if result is None or isinstance(result, bool):
            return result
        raise MappingApplyError(
            f"'where' needs true or false here, found {operand.describe(result)}"
        )

    return test


def _or(left: Test, right: Test) -> Test:
    def test(row: Row) -> Truth:
        first = left(row)
        if first is True:
            return True
        second = right(row)
        if second is True:
            return True
        return None if first is None or second is None else False

    return test


def _and(left: Test, right: Test) -> Test:
    def test(row: Row) -> Truth:
        first = left(row)
        if first is False:
            return False
        second = right(row)
        if second is False:
            return False
        return None if first is None or second is None else True

    return test


def _not(inner: Test) -> Test:
    def test(row: Row) -> Truth:
        result = inner(row)
        return None if result is None else not result

    return test


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float, Decimal)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, numbers) and isinstance(b, numbers):
        return True
    return isinstance(a, str) and isinstance(b, str)


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b),
    "<>": lambda a, b: bool(a != b),
    "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
}


def _compare(operator: str, left: _Operand, right: _Operand) -> Test:
    apply = _OPERATORS[operator]

    def test(row: Row) -> Truth:
        a, b = left.get(row), right.get(row)
        if a is None or b is None:
            return None
        if not _comparable(a, b):
            raise _mismatch(operator, left, a, right, b)
        try:
            return apply(a, b)
        except (TypeError, InvalidOperation) as exc:  # e.g. NaN in an ordering
            raise _mismatch(operator, left, a, right, b) from exc

    return test


def _mismatch(operator: str, left: _Operand, a: Any, right: _Operand, b: Any) -> MappingApplyError:
    return MappingApplyError(
        f"'where' cannot compare {left.describe(a)} with {right.describe(b)} ({operator}); "
        "compare text with 'text', numbers with numbers"
    )


def _in(left: _Operand, items: list[_Operand]) -> Test:
    def test(row: Row) -> Truth:
        a = left.get(row)
        if a is None:
            return None
        unknown = False
        for item in items:
            b = item.get(row)
            if b is None:
                unknown = True  # x in (…, null) is unknown unless x equals another item
            elif not _comparable(a, b):
                raise _mismatch("in", left, a, item, b)
            elif a == b:
                return True
        return None if unknown else False

    return test


def _like(left: _Operand, pattern: re.Pattern[str]) -> Test:
    def test(row: Row) -> Truth:
        value = left.get(row)
        if value is None:
            return None
        if not isinstance(value, str):
            raise MappingApplyError(f"'like' needs text, found {left.describe(value)}")
        return pattern.fullmatch(value) is not None

    return test


def _like_pattern(text: str) -> re.Pattern[str]:
    """SQL LIKE as PostgreSQL reads it: % any text, _ one character, \\ escapes either."""
    parts: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    if escaped:
        parts.append(re.escape("\\"))
    return re.compile("".join(parts), re.DOTALL)


def _is_null(left: _Operand) -> Test:
    def test(row: Row) -> Truth:
        return left.get(row) is None

    return test


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float | Decimal):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    return f"a JSON {'array' if isinstance(value, list) else 'object'}"
