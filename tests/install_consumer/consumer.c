/* Links against an installed libsinkrouter and checks the loaded library matches the header. */
#include <stdio.h>

#include <sinkrouter/sinkrouter.h>

int main(void) {
  sr_context* context = NULL;
  if (sr_abi_version() != SR_ABI_VERSION) return 1;
  if (sr_context_create(NULL, &context) != SR_OK) {
    fprintf(stderr, "%s\n", sr_last_error());
    return 1;
  }
  sr_context_destroy(context);
  printf("consumer linked against SinkRouter %s\n", sr_version());
  return 0;
}
