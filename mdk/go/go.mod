module github.com/capsule-run/capsule/mdk/go

go 1.24

require github.com/valyala/fastjson v1.6.4
