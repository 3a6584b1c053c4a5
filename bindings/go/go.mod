module sinkrouter.dev/sinkrouter

go 1.19
