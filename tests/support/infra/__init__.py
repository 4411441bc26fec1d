"""Reusable test infrastructure: real services (sshd+TOTP, SLURM, registry, podman).

Import as ``support.infra.<module>`` (tests/conftest.py puts ``tests/`` on ``sys.path``).
Every class starts real processes bound to 127.0.0.1 on ports picked at runtime,
keeps its state in its own directory, and stops what it started by PID.
Needs root (the fixtures create a user, start sshd/slurmctld, write /etc/pam.d).
"""
