package sinkrouter

// #include "sinkrouter/sinkrouter.h"
import "C"

// HeaderABIVersion is SR_ABI_VERSION of the header this package was compiled against.
const HeaderABIVersion = uint(C.SR_ABI_VERSION)

// Version is "major.minor.patch" of the loaded library.
func Version() string { return C.GoString(C.sr_version()) }

// VersionNumber is major*10000 + minor*100 + patch of the loaded library.
func VersionNumber() uint { return uint(C.sr_version_number()) }

// ABIVersion is the ABI version of the loaded library; NewContext refuses a library whose ABI
// differs from HeaderABIVersion.
func ABIVersion() uint { return uint(C.sr_abi_version()) }
