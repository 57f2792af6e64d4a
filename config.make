# Makefile rules for the module's static library (see config): cargo runs
# every time (it knows what changed), against this nginx's objs/ and source.

cat << END                                                  >> $NGX_MAKEFILE

.PHONY: $ngx_oauth2_lib

$ngx_oauth2_lib:
	NGINX_BUILD_DIR="\$(CURDIR)/$NGX_OBJS" NGINX_SOURCE_DIR="\$(CURDIR)" \\
	$ngx_oauth2_cargo rustc \\
		--manifest-path "$ngx_addon_dir/Cargo.toml" \\
		-p ngx_http_oauth2_module \\
		--lib --crate-type staticlib \\
		--no-default-features \\
		--profile $ngx_oauth2_cargo_profile \\
		--target-dir "\$(CURDIR)/$ngx_oauth2_target"

END

if [ -n "$ngx_oauth2_needs" ]; then
    cat << END                                              >> $NGX_MAKEFILE
$ngx_oauth2_needs: $ngx_oauth2_lib

END
fi
