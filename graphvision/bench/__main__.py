"""``python -m graphvision.bench ...``: runs a benchmark, prints its summary."""

from graphvision.bench.cli import parser, run, summary

if __name__ == "__main__":
    args = parser().parse_args()
    print(summary(args, run(args)))
    print(f"\nwrote {args.out}")
