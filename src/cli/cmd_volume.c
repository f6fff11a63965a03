#include "cli/commands.h"
int cmd_volume(int argc, char **argv) { (void)argc; (void)argv; return 2; }
