"""`voxsurv bundle export NAME --out DIR [--zip]`: a model-zoo-ready, self-contained copy of a bundle."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("bundle", help="bundle tools: `export` writes a zoo-ready, self-contained copy")
    actions = p.add_subparsers(dest="bundle_action", metavar="ACTION", required=True)
    e = actions.add_parser("export", help="copy a bundle with the project's code in scripts/, macros resolved, "
                                          "bundle_root '.', zoo metadata (runs without this repository)")
    e.add_argument("bundle", help="pretrain, finetune, inference, or a bundle folder")
    e.add_argument("--out", required=True, help="folder to write <zoo name>/ into")
    e.add_argument("--zip", action="store_true", help="also write <zoo name>.zip beside it")
    e.add_argument("--overwrite", action="store_true", help="replace an existing export of the same name")
    e.set_defaults(handler=run)


def run(args) -> int:
    from voxsurv.bundle_export import export_bundle

    dest = export_bundle(args.bundle, args.out, zip_file=args.zip, overwrite=args.overwrite)
    print(f"exported: {dest}" + (f" (+ {dest.with_suffix('.zip').name})" if args.zip else ""))
    print(f"run it:   cd {dest} && python -m monai.bundle run --config_file configs/"
          + ("inference.yaml --dataset_dir DIR" if (dest / "configs" / "inference.yaml").exists() else "train.yaml"))
    return 0
