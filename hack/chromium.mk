# Headless Chromium for the dashboard's e2e test (test/e2e/dashboard_test.go),
# which drives the real page through chromedp. make test-e2e needs it: this
# target uses /usr/bin/chromium (or $(CHROMIUM)) when present, installs
# Debian's chromium package when running as root with apt-get, and otherwise
# fails with the command to run. It never skips.

CHROMIUM ?= /usr/bin/chromium

chromium: ## Make sure headless Chromium is installed for the dashboard's e2e test (as root with apt-get: installs it)
	@if [ -x "$(CHROMIUM)" ]; then \
		echo "chromium: $(CHROMIUM)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "chromium: not found, installing Debian's chromium package"; \
		apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; \
	else \
		echo "chromium: $(CHROMIUM) not found; the dashboard's e2e test needs it. Install it with:" >&2; \
		echo "  sudo apt-get install -y chromium" >&2; \
		echo "(or point CHROMIUM=/path/to/chromium; the test reads MESHREV_CHROMIUM)" >&2; \
		exit 1; \
	fi

.PHONY: chromium
