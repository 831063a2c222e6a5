# The cargo step of `make modules` (see config): always run, since cargo itself
# knows whether anything changed. The static library is built without the
# crate's default features: no vendored nginx, and no module table of its own
# (nginx generates objs/ngx_http_shared_map_module_modules.c).

cat << END                                                    >> $NGX_MAKEFILE

.PHONY: $NGX_SHARED_MAP_LIB

$NGX_SHARED_MAP_LIB:
	NGINX_SOURCE_DIR="`pwd`" NGINX_BUILD_DIR="`cd $NGX_OBJS && pwd`" \\
	NGX_SHARED_MAP_STREAM=$NGX_SHARED_MAP_STREAM \\
	$NGX_SHARED_MAP_CARGO rustc --release --lib --crate-type staticlib \\
		--manifest-path "$ngx_addon_dir/Cargo.toml" -p ngx_http_shared_map \\
		--no-default-features --target-dir "$NGX_SHARED_MAP_TARGET"

$NGX_OBJS${ngx_dirsep}ngx_http_shared_map_module$ngx_modext:	$NGX_SHARED_MAP_LIB

END
