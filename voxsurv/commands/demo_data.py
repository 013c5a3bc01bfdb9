"""`voxsurv demo-data --out DIR`: write the synthetic source/target demo cohort pair."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo-data", help="write the deterministic synthetic demo cohort pair "
                                         "(source for pre-training, shifted target for fine-tune/test)")
    p.add_argument("--out", required=True, help="output folder (manifest.csv, true_risk.csv, images/)")
    p.add_argument("--n-source", type=int, default=120, help="source patients (default 120)")
    p.add_argument("--n-target", type=int, default=80, help="target patients (default 80)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--finetune-fraction", type=float, default=0.2,
                   help="event-stratified fraction of the target cohort for fine-tuning (rest: test)")
    p.add_argument("--overwrite", action="store_true", help="regenerate even if a manifest exists")
    p.set_defaults(handler=run)


def run(args) -> int:
    from voxsurv.core.output_paths import check_output_folder
    from voxsurv.training.demo import generate_demo_cohort

    check_output_folder(args.out)
    path = generate_demo_cohort(args.out, n_source=args.n_source, n_target=args.n_target,
                                seed=args.seed, finetune_fraction=args.finetune_fraction,
                                overwrite=args.overwrite)
    print(f"demo cohort manifest: {path}")
    return 0
