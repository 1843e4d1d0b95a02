"""Fill-in for AWS Lambda's Invoke: moto runs function code only in Docker; the emulator runs the
deployed package's handler in a local Python process instead."""
