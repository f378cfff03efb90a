module {{name}}

go 1.24

require github.com/capsule-run/capsule/mdk/go v0.0.0

{{goRequire}}

// the Capsule Go MDK is not published on its own: mdk/ is a copy of it
replace github.com/capsule-run/capsule/mdk/go => ./mdk
