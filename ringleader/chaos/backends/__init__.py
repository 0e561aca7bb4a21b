"""Where the chaos suite's workers, brokers and Redis run: local processes (`local`, what CI
runs) or a docker-compose project (`compose`). Both serve the same scenarios through `Backend`."""
