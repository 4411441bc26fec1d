#!/bin/sh
# pam_exec (expose_authtok) runs this for every keyboard-interactive answer sshd receives: the answer
# arrives on stdin (NUL-terminated). It is appended, one per line, to the file $1 that the test reads
# (sshd_recording.py): a real observation point for "what did the client type at this server".
# Usage (PAM): auth requisite pam_exec.so expose_authtok quiet /path/record_answers.sh /path/answers.log
set -eu
{ tr -d '\000'; printf '\n'; } >> "$1"
exit 0
