/* config_diff.c — what changed between the config saved in a checkpoint and the one a
 * resumed run has now (config.h: config_diff). */
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "io/config.h"

int config_diff(const char *saved, const char *now, char *bad, size_t nbad)
{
    static const char *fixed[] = {"layers", "input", "name"};
    int refuse = 0;
    char sec[1200] = "";
    const char *p = now;
    bad[0] = 0;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char line[1200];
        snprintf(line, sizeof line, "%.*s", (int)MT_MIN(n, sizeof line - 1), p);
        p += n + (e ? 1 : 0);
        if (line[0] == '[') { snprintf(sec, sizeof sec, "%s", line); continue; }
        char *eq = strstr(line, " = ");
        if (line[0] == ';' || !eq) continue;
        /* find the same key in the same section of `saved` */
        const char *s = strstr(saved, sec);
        if (!s) continue;
        char key[128];
        snprintf(key, sizeof key, "\n%.*s = ", (int)(eq - line), line);
        const char *k = strstr(s, key);
        const char *nextsec = *s ? strstr(s + 1, "\n[") : NULL; /* s + 1: past an empty saved */
        if (!k || (nextsec && k > nextsec)) continue;
        k += strlen(key);
        const char *ke = strchr(k, '\n');
        size_t kn = ke ? (size_t)(ke - k) : strlen(k);
        if (strlen(eq + 3) == kn && !strncmp(eq + 3, k, kn)) continue;
        char keyname[128];
        snprintf(keyname, sizeof keyname, "%.*s", (int)(eq - line), line);
        int is_fixed = 0;
        for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
            if (!strcmp(keyname, fixed[i]) &&
                (!strcmp(sec, "[model]") || (!strcmp(sec, "[optim]") && !strcmp(keyname, "name"))))
                is_fixed = 1;
        if (is_fixed) {
            refuse = 1;
            snprintf(bad, nbad, "%s %s: checkpoint has '%.*s', the config now has '%s'", sec,
                     keyname, (int)kn, k, eq + 3);
        } else {
            log_info("resume: %s %s changed from '%.*s' to '%s' (applied)", sec, keyname, (int)kn, k,
                     eq + 3);
        }
    }
    return refuse;
}
