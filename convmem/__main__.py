from convmem.cli import main

raise SystemExit(main())
