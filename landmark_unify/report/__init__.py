"""What a person reads: build summaries (``summary``), contact sheets (``render``), histograms and HTML
pages (``html``)."""
