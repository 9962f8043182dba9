"""Our own subcommands, one module each, every one with `main(argv) -> int`: cli.py only
dispatches to them. doit_verbs.py holds `forget` and `clean`, which are doit commands acting
on nightshift's state; shared.py what `status`, `report` and `doctor` share."""
