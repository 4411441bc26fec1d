"""Reusable test infrastructure: real services (sshd+TOTP, SLURM, registry, podman).

Import as ``infra.<module>`` with ``tests/`` on ``sys.path`` (``PYTHONPATH=tests``).
Every class starts real processes bound to 127.0.0.1 on ports picked at runtime,
keeps its state in its own directory, and stops what it started by PID.
Needs root (the fixtures create a user, start sshd/slurmctld, write /etc/pam.d).
"""
