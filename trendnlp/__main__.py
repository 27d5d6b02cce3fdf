from trendnlp.cli import main

raise SystemExit(main())
