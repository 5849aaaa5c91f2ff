"""``blox space info|show``: the search space's blocks and one model's blocks, vector, hash and costs."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()


def space_info() -> None:
    """Sizes of the space and the table of its 45 canonical blocks."""
    from blox_env.costs import component_costs, macs_table, params_table
    from blox_env.space import BLOCKS, N_BLOCKS, N_MODELS, N_STAGES, OPS, RAW_TO_BLOCK, block_name

    raw = len(RAW_TO_BLOCK)
    invalid = sum(1 for b in RAW_TO_BLOCK if b < 0)
    params, macs = params_table(), macs_table()
    console.print(
        f"BLOX space: {N_STAGES} stages, ops {', '.join(f'{o}={i}' for i, o in enumerate(OPS))}\n"
        f"per stage: {raw} raw configs, {invalid} invalid, {raw - invalid} valid, {N_BLOCKS} unique blocks\n"
        f"models: {raw**N_STAGES:,} raw archs, {N_MODELS:,} unique (index = b0 + 45*b1 + 2025*b2)\n"
        f"params: {params.min():,} .. {params.max():,}   MACs: {macs.min():.3e} .. {macs.max():.3e}"
    )
    costs = component_costs()
    # fits 80 columns: no vertical rules, compact vectors, the vector layout in the caption; id never wraps
    table = Table(title="canonical blocks (params at stages 0/1/2)", caption="vector: [[opA],[opB,prev,inp,sc]]",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("id", justify="right", no_wrap=True, min_width=2)
    table.add_column("name", no_wrap=True)
    table.add_column("vector", no_wrap=True)
    for s in range(N_STAGES):
        table.add_column(f"params s{s}", justify="right", no_wrap=True)
    for b, (op_a, op_b, prev, inp, sc) in enumerate(BLOCKS):
        table.add_row(
            str(b), block_name(b), escape(json.dumps([[op_a], [op_b, prev, inp, sc]], separators=(",", ":"))),
            *(f"{costs.blocks[s][b].params:,}" for s in range(N_STAGES)),
        )
    console.print(table)


def space_show(
    arch: Annotated[str, typer.Argument(help="index, 32-hex hash, JSON arch vector or 'blocks:b0,b1,b2'")],
) -> None:
    """Blocks, vector, hash, params and MACs of one model."""
    from blox_env.costs import static_costs
    from blox_env.space import block_name, parse_arch

    a = parse_arch(arch)
    cost = static_costs(a)
    console.print(
        f"index   {a.index}\nblocks  {a.blocks}  ({', '.join(block_name(b) for b in a.blocks)})\n"
        f"vec     {escape(json.dumps(a.vec))}\nhash    {a.hash}\nparams  {cost.params:,}\nMACs    {cost.macs:,}"
    )


def register(app: typer.Typer) -> None:
    """Add the ``blox space`` group: ``info`` and ``show``."""
    group = typer.Typer(help="The search space: blocks, models, hashes, costs.", no_args_is_help=True)
    group.command("info")(space_info)
    group.command("show")(space_show)
    app.add_typer(group, name="space")
