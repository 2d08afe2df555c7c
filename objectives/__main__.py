"""python -m objectives table | classify --json '{...}' | explain NAME|JSON [--param value]

`table` prints the Appendix B dimension table, computed from the matrices. `classify` prints
one JSON object (toolbox, constraint_set, tractable_form, residual). `explain` says the same
in words. Out-of-family input exits 2 with one line on stderr naming the problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from fractions import Fraction

from objectives.compile import Compiled, compile_lagrangian, dimension_table
from objectives.presets import PRESETS, get_preset
from objectives.terms import FamilyError, Lagrangian, format_combination

_KNOWN_KEYS = {"alpha1", "alpha2", "lambdas"}


def lagrangian_from_json(text: str) -> Lagrangian:
    """Parse '{"alpha1": a1, "alpha2": a2, "lambdas": {"<term>": value}}'."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise FamilyError(f"not valid JSON: {error}") from None
    if not isinstance(data, Mapping):
        raise FamilyError("expected a JSON object with alpha1, alpha2 and lambdas")
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise FamilyError(f"unknown key {unknown[0]!r}; allowed: alpha1, alpha2, lambdas")
    lambdas = data.get("lambdas", {})
    if not isinstance(lambdas, Mapping):
        raise FamilyError("lambdas: expected an object {term: value}")
    return Lagrangian.from_values(data.get("alpha1", 0), data.get("alpha2", 0), lambdas)


def lagrangian_from_words(what: str, params: list[str]) -> tuple[Lagrangian, str]:
    """A preset name with `--param value` pairs, or a JSON Lagrangian."""
    if what.lstrip().startswith("{"):
        if params:
            raise FamilyError("parameters go inside the JSON, not after it")
        return lagrangian_from_json(what), "the Lagrangian"
    preset = get_preset(what)
    values: dict[str, str] = {}
    it = iter(params)
    for flag in it:
        if not flag.startswith("--"):
            raise FamilyError(f"expected --name value, got {flag!r}")
        value = next(it, None)
        if value is None:
            raise FamilyError(f"{flag} needs a value")
        values[flag[2:]] = value
    shown = ", ".join(f"{k}={values.get(k, v)}" for k, v in preset.params.items())
    return preset(**values), f"{preset.name}({shown})" if shown else preset.name


def information_preference(weight: Fraction, name: str) -> str:
    if weight < 0:
        return f"maximises {name} (coefficient {float(weight):g})"
    if weight > 0:
        return f"minimises {name} (coefficient {float(weight):g})"
    return f"is neutral about {name}"


def explain(compiled: Compiled, title: str) -> str:
    lagrangian = compiled.lagrangian
    lines = [
        f"{title}",
        f"  Lagrangian:      {lagrangian.describe()}",
        f"  information:     {information_preference(lagrangian.alpha1, 'I_p(x;z)')}; "
        f"{information_preference(lagrangian.alpha2, 'I_q(x;z)')}",
        f"  constraints:     {', '.join(compiled.constraint_sets)} "
        "(Definition 5: C1 joint, C2 x-marginal + z|x, C3 z-marginal + x|z)",
        f"  toolbox:         {compiled.toolbox}",
    ]
    if compiled.tractable:
        form = format_combination((w, t) for t, w in compiled.tractable_form.items())
        lines.append(f"  tractable loss:  {form}   (minimised, constants dropped)")
    else:
        residual = format_combination((w, t) for t, w in compiled.residual.items())
        lines.append(f"  blocked by:      {residual}")
        lines.append(
            "                   (no elementary transformation turns these into toolbox terms)"
        )
    return "\n".join(lines)


def print_table() -> None:
    rows = dimension_table()
    width = max(len(name) for name, _ in rows)
    print(f"{'subspace':<{width}}  dimension")
    for name, dimension in rows:
        print(f"{name:<{width}}  {dimension}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m objectives", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("table", help="the Appendix B dimension table, computed")
    classify = commands.add_parser("classify", help="toolbox and tractable form as JSON")
    classify.add_argument("--json", required=True, dest="lagrangian", help="the Lagrangian")
    explain_parser = commands.add_parser("explain", help="a preset or Lagrangian in words")
    explain_parser.add_argument("what", help=f"a preset ({', '.join(PRESETS)}) or JSON")
    explain_parser.add_argument("params", nargs=argparse.REMAINDER, help="--beta 4 ...")
    args = parser.parse_args(argv)
    try:
        if args.command == "table":
            print_table()
        elif args.command == "classify":
            compiled = compile_lagrangian(lagrangian_from_json(args.lagrangian))
            print(json.dumps(compiled.to_json()))
        else:
            lagrangian, title = lagrangian_from_words(args.what, args.params)
            print(explain(compile_lagrangian(lagrangian), title))
    except FamilyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
