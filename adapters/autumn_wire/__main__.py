from autumn_wire.server import main

raise SystemExit(main())
