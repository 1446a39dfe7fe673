from spantune.cli import main

raise SystemExit(main())
