"""Entry point for ``python -m octopus`` and the ``octopus.pyz`` zipapp.

Only the interpreter check runs before anything else is imported, so an
unsupported Python gets one clear line instead of a traceback.
"""
import sys

MIN_PYTHON = (3, 9)


def main(argv=None):
    if sys.version_info < MIN_PYTHON:
        sys.stderr.write(
            "octopus: Python %d.%d is not supported; use CPython 3.9 or newer\n"
            % sys.version_info[:2]
        )
        return 2
    from octopus import cli

    return cli.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
