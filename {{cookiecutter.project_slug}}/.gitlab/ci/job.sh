# shellcheck shell=bash
# The FIRST line of every CI job that holds a secret (or makes the tool such jobs run):
#     . .gitlab/ci/job.sh NEED ARGS...
# Sourced, not run: GitLab's runner exports every job variable (pipeline, trigger and manual-job ones
# included, which win over the project's) inside its own shell before the first line, so anything we
# exec from there would already be steered by LD_PRELOAD/LD_AUDIT/GCONV_PATH (the dynamic loader) or
# BASH_ENV (a bash started for a script). Here only shell builtins run until every exported variable
# outside the inert kinds below is gone; then /bin/bash -p (ignores BASH_ENV, ENV, SHELLOPTS, BASHOPTS,
# CDPATH, GLOBIGNORE and imported functions) runs mlops.sh, which sets PATH, HOME and the locale itself
# and starts `python3 -I`. The exact names each kind may keep are decided later, in mlops/jobenv.py
# (from mlops/civars.py's table): this filter only removes everything that any program but ours reads.
#   CI_*, GITLAB_USER_LOGIN   GitLab's job data (validated as data by mlops.jobenv)
#   HPC_*, MLOPS_*            our own names (read by mlops only)
#   WANDB_API_KEY             exactly that one (WANDB_BASE_URL etc. would steer where the key goes)
# NEED: tool (the tool job: download the locked wheels) or a lock name in .gitlab/ci/lock/ (click,
# collect) followed by the mlops arguments.
IFS=$' \t\n'
if [ "$(type -t compgen)" != builtin ]; then
  echo "job.sh: this bash has no compgen builtin; refusing to run with an unfiltered environment" >&2
  return 1
fi
for __mlops_name in $(compgen -e); do
  case $__mlops_name in
    CI_* | GITLAB_USER_LOGIN | HPC_* | MLOPS_* | WANDB_API_KEY) ;;
    *) unset -v "$__mlops_name" 2>/dev/null || export -n "${__mlops_name?}" ;;  # (readonly: unexport)
  esac
done
for __mlops_name in $(compgen -e); do  # a readonly exported variable would survive: refuse to go on
  case $__mlops_name in
    CI_* | GITLAB_USER_LOGIN | HPC_* | MLOPS_* | WANDB_API_KEY) ;;
    *) echo "job.sh: cannot remove the variable $__mlops_name from the environment" >&2 && return 1 ;;
  esac
done
unset -v __mlops_name
/bin/bash -p .gitlab/ci/mlops.sh "$@"
