module github.com/capsule-run/capsule/examples/go

go 1.24

require (
	github.com/capsule-run/capsule/mdk/go v0.0.0
	github.com/valyala/fastjson v1.6.4
)

replace github.com/capsule-run/capsule/mdk/go => ../../mdk/go
