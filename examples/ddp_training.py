"""DDP training on 2 CPU processes: ``python examples/ddp_training.py --smoke`` or torchrun."""

from bayesphys.examples.ddp_training import main

if __name__ == "__main__":
    from bayesphys._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        main()
