"""DDP training on 2 CPU processes: ``python examples/ddp_training.py --smoke`` or torchrun."""

from bayesphys.examples.ddp_training import main

if __name__ == "__main__":
    from bayesphys._console import tolerant_stdout

    tolerant_stdout()  # its output prints on any console (bayesphys._console)
    main()
