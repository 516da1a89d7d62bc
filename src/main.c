/* herd: one binary, the daemon and its CLI. */
#include "herd/cmd.h"

int main(int argc, char **argv) { return cli_main(argc, argv); }
