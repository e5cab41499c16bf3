"""``python -m breakhis_lit`` runs the ``breakhis`` command line."""

from breakhis_lit.cli import main

if __name__ == "__main__":
    main()
