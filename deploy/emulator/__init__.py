"""The embedded AWS emulator of the `local` stage: moto server, our fill-ins, and its process control.

Import `deploy.emulator.control` for start/stop/status (it stays free of moto and boto3);
`deploy.emulator.app` and `deploy.emulator.server` load moto.
"""
