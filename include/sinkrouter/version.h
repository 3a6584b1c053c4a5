/* SinkRouter version macros. Kept apart from sinkrouter.h so build scripts can parse them. */
#ifndef SINKROUTER_VERSION_H
#define SINKROUTER_VERSION_H

#define SR_VERSION_MAJOR 0
#define SR_VERSION_MINOR 3
#define SR_VERSION_PATCH 0
/* The ABI version is the SONAME's number: it moves only on an incompatible change. */
#define SR_ABI_VERSION 1

#define SR_VERSION_NUMBER (SR_VERSION_MAJOR * 10000 + SR_VERSION_MINOR * 100 + SR_VERSION_PATCH)
#define SR_STRINGIFY_(x) #x
#define SR_STRINGIFY(x) SR_STRINGIFY_(x)
#define SR_VERSION_STRING \
  SR_STRINGIFY(SR_VERSION_MAJOR) "." SR_STRINGIFY(SR_VERSION_MINOR) "." SR_STRINGIFY(SR_VERSION_PATCH)

#endif
