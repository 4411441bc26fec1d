#!/bin/sh
# A cluster user's `@NAME@` in the tests (@PREFIX@/user-bin-@DEV@ first on its PATH): the real
# Apptainer, run unprivileged as this user by the root wrapper (the only command the sudoers line
# of the test fixture allows: it needs root only to enter the root that holds Apptainer).
exec sudo -n @PREFIX@/bin/mlops-apptainer-root @DEV@ @NAME@ "$@"
