"""Test helpers shared by the suites: emulators and servers that tests run for real."""
