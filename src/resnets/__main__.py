from resnets.cli import main

raise SystemExit(main())
