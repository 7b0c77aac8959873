/* SPDX-License-Identifier: MIT */
/*
 * This file implements a test helper: another process writing the store
 * through libustate while a mount is live.
 *   put DB set KEY VALUE | put DB delete KEY
 */
#include <stdio.h>
#include <string.h>

#include <ustate.h>

int main(int argc, char **argv)
{
	ustate *s;
	int rc;

	if (argc < 4) {
		fprintf(stderr, "usage: put DB set KEY VALUE | delete KEY\n");
		return 2;
	}
	rc = ustate_open_sqlite(&s, argv[1], NULL);
	if (rc == 0 && !strcmp(argv[2], "set") && argc == 5)
		rc = ustate_set(s, argv[3], argv[4], strlen(argv[4]), NULL);
	else if (rc == 0 && !strcmp(argv[2], "delete"))
		rc = ustate_delete(s, argv[3]);
	ustate_close(s);
	if (rc < 0)
		fprintf(stderr, "put: %s\n", ustate_strerror(rc));
	return rc < 0;
}
