/* pam_prompt.so: asks ONE question with a configurable text and stores the answer as PAM_AUTHTOK, for the
 * next module of the stack (e.g. `pam_unix.so use_first_pass`) to check. Lets the test login node ask a
 * password with a real site's wording ("Passwort: ", "Kennwort: ", "First Factor: "), which pam_unix cannot
 * (its prompt is fixed). Built by tests/support/infra/sshd_totp.py; used only by the test PAM services.
 *
 *   auth required /path/pam_prompt.so [prompt=Passwort: ]
 *   auth required pam_unix.so use_first_pass
 */
#include <stdlib.h>
#include <string.h>
#include <security/pam_modules.h>
#include <security/pam_ext.h>

int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    const char *prompt = "Password: ";
    char *answer = NULL;
    int rc;

    (void)flags;
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "prompt=", 7) == 0)
            prompt = argv[i] + 7;
    rc = pam_prompt(pamh, PAM_PROMPT_ECHO_OFF, &answer, "%s", prompt);
    if (rc != PAM_SUCCESS || answer == NULL)
        return rc == PAM_SUCCESS ? PAM_AUTH_ERR : rc;
    rc = pam_set_item(pamh, PAM_AUTHTOK, answer);
    memset(answer, 0, strlen(answer));
    free(answer);
    return rc;
}

int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)pamh; (void)flags; (void)argc; (void)argv;
    return PAM_SUCCESS;
}
