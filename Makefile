# Front door to the CMake build. `make demo` and `make test` are the two README commands.
BUILD ?= build

.PHONY: all deps demo test clean
all:
	cmake -S . -B $(BUILD) -G Ninja >/dev/null
	ninja -C $(BUILD)

deps:
	bash scripts/install-deps.sh

demo: deps all
	bash scripts/demo.sh

test: deps all
	bash scripts/test.sh

clean:
	rm -rf $(BUILD) build-*
